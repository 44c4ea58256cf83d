"""Everything Mosquitto: the config rendered from the production `mosquitto.conf`, and a launcher for tests
and the local stack. (Accounts, ACLs and credentials join here.)
"""
