"""What runs on the robot: the real-time runner, its scheduler, transport and backends, releases,
health, status and the in-loop bench. Shipped in the robot's wheel; never imports the controller side."""
