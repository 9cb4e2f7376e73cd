"""Executing a validated procedure: options, the scheduler, one step, fan-out, dry-run judgement, the saga of rollbacks, results and the event stream."""
