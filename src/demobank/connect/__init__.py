"""Connect: the connectors that automation workflows use as steps ("Send SMS", "Send Email")."""
