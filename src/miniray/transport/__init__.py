"""How processes talk: framed pickled messages over Unix sockets (and, later, TCP)."""
