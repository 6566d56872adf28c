"""What lets a seller check its ledger on its own machine: the per-seller hash chain of entries
(`chain`), balance at a past time (`balance_at`), signed checkpoints of each chain's head
(`signing`, `checkpoints`) and period statements (`documents`, `build`). The contract, and what a
seller can and cannot prove with it: docs/api.md, "Statements"."""
