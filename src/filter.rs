//! Which sockets a user asked for.
