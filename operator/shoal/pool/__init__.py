"""Pure pool bookkeeping: which pods a pool has, wants, removes and hands out. No I/O here."""
