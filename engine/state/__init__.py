"""What outlives a process: the state store (runs, step records, locks, plans), resume and rollback of a recorded run, saved plans."""
