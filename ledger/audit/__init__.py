"""The ledger audit: checks invariants 1-7 of the design (docs/architecture.md) and reports every
breach; it never repairs anything.

- `full`: every check over every entry, for all sellers or some (`manage.py ledger_audit`).
- `incremental`: the periodic `ledger.audit` task: what is new since each seller's checkpoint, plus
  a rolling full pass (`manage.py ledger_audit --incremental`); its SQL in `incremental_sql`."""

from ledger.audit.full import Breach, audit_ledger
from ledger.audit.incremental import AuditRun, audit_ledger_incremental

__all__ = ["AuditRun", "Breach", "audit_ledger", "audit_ledger_incremental"]
