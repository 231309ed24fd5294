"""The HTTP layer: the app, one router per resource, the routes' handlers, auth and middleware."""
