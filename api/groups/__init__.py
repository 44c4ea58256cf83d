"""Device groups: their descriptions (table `device_groups`) and their members (`devices.group_name`)."""
