"""`perfsleuth demo`'s parts: the example server, its scenario and fault switch
(`example_server`), and the before/after report (`halves`)."""
