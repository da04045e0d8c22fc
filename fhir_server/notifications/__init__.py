"""Notifications: Subscriptions on the resources, a change feed every worker tails, and the
channels that deliver (WebSocket, REST-hook)."""
