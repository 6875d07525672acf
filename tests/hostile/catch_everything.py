import time


def run():
    while True:
        try:
            time.sleep(3600)
        except BaseException:  # noqa: BLE001 - the point of the test
            pass
