"""Local stand-ins for the internet, used by tests, the demo and benchmarks. Not imported by services."""
