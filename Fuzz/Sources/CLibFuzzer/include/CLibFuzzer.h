#ifndef TOLLGATE_CLIBFUZZER_H
#define TOLLGATE_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, FuzzerDriver.cpp), linked by `-sanitize=fuzzer`. SwiftPM renames an executable's
/// entry point on Linux, so each fuzz target has its own `main` that hands control to libFuzzer through this.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
