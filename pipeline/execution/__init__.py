"""Running on Ray: start-up, the stage adapter, pools, the runner and job submission."""
