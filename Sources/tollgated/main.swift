print("tollgated")
