"""How processes talk: framed pickled messages over Unix sockets on a node and TCP between nodes.

    messages.py  every message item, named by the side it lives on; TaskSpec and Result
    framing.py   one frame = a length header + a pickled list of items (Connection, FrameReader)
    auth.py      the token challenge a TCP peer passes before anything is unpickled
"""
