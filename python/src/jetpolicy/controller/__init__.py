"""What runs on the controller: export and validation of policies, parity references, the runtime
bundler, rollouts and their reports. Never shipped to a robot."""
