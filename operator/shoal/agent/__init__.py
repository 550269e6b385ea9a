"""shoal-agent: the training container's entrypoint, and a small reference trainer that speaks its protocol.

Protocol (files in SHOAL_WORKDIR, default /shoal):
- progress.json: written by the trainer: timesteps, episodes, meanReward, loss, lastCheckpoint
  {path, timesteps, time, commandId}.
- command-id: written by the agent before it signals the trainer, echoed back in lastCheckpoint.
Signals to the trainer: SIGUSR1 = checkpoint now; SIGTERM = checkpoint, then exit 0.
"""
