"""What a stored run reads as: the run JSON document (`run_document`, the contract in
docs/json.md), a RUN argument resolved to one run or a group read as one (`stored_run`),
and the summary stored with each finished run for `history` and `compare`
(`stored_summary`)."""
