"""Our accounts at the providers: the float (our balance there, polled), the funding admins record,
and the daily close that reconciles a provider's record and balance with our charges."""
