#!/usr/bin/env bash
# Prints the configuration installed as /etc/tollgate/tollgated.json: the embedded default with the production
# state directory, and the admin socket open to the tollgate-admin group (see systemd/tollgate.sysusers.conf).
#   usage: production-config.sh PATH/TO/tollgated
set -euo pipefail
"$1" --print-default-config | sed \
    -e 's|"state_dir": "./state"|"state_dir": "/var/lib/tollgate"|' \
    -e 's|"admin": { "uids": \[0\], "allow_own_user": true }|"admin": { "uids": [0], "groups": ["tollgate-admin"], "allow_own_user": true }|'
