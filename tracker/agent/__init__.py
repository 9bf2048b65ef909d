"""`perfsleuth agent`: the probes run on the server's own host and stream their samples
to the drivers that connect (`tracker.agent.server`), over a small versioned protocol
(`tracker.agent.protocol`)."""
