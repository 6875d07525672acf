import os


def run():
    fds = []
    while True:
        fds.append(os.open(os.devnull, os.O_RDONLY))
