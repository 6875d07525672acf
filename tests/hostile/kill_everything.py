import os
import signal
import time


def run():
    # Refuse to run outside a PID namespace: there kill(-1) would hit every process the user
    # (or root) owns. Inside bubblewrap only a handful of processes are visible.
    visible = [p for p in os.listdir("/proc") if p.isdigit()]
    if os.getpid() > 100 or len(visible) > 20:
        raise RuntimeError("not in a PID namespace: refusing to kill(-1)")
    if os.fork() == 0:
        time.sleep(3600)
    os.kill(-1, signal.SIGKILL)  # Linux spares the caller
    return {"combined_score": 0.25}
