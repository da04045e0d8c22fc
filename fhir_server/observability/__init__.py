"""Operation: JSON access log, Prometheus metrics, and the ASGI middleware that feeds both."""
