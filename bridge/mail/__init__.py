"""Mail capability: rooms bridged to a secure health mailbox (MSSanté-style)."""
