"""Share links: a long random token that opens one finished job's player, read-only, for anyone
who has it. links: making, finding, revoking and rate-limiting; views: the owner's controls on
the job page and the shared page with its files."""
