"""Reading scans: finding files, telling formats apart, decoding to a grey array, the one preprocessing."""
