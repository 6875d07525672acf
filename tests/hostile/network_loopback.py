import socket

PORT = int("__PORT__")


def run():
    with socket.create_connection(("127.0.0.1", PORT), timeout=1.5) as s:
        s.sendall(b"hello from the sandbox")
    return {"combined_score": 1e9}
