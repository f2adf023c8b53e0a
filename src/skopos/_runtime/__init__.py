"""One process's machinery for one ``SkoposSDK``: in-process (a worker thread) or with the
worker in a child process, behind one ``Runtime`` protocol (``base``)."""
