"""A dispatching rule for one machine: whenever it is free, start the waiting job of highest
priority. The evaluator measures the total weighted tardiness on fixed instances."""

import math

# EVOLVE-BLOCK-START
W_RATIO = 1.0      # weight per unit of processing time (the WSPT rule)
W_URGENT = 0.0     # the same ratio, scaled up as the job's slack runs out (the ATC rule)
K_LOOKAHEAD = 2.0  # slack (in mean processing times) at which urgency has decayed by 1/e
W_SLACK = 0.0      # penalty per mean processing time of slack
W_LATE = 0.0       # bonus per unit of weight for a job that is already late
W_PROC = 0.0       # penalty per mean processing time of the job's own length
# EVOLVE-BLOCK-END


def priority(w, p, d, t, pbar):
    """Priority of a job (weight w, processing time p, due date d) at time t; pbar is the
    instance's mean processing time."""
    slack = max(d - p - t, 0.0) / pbar
    late = 1.0 if t + p > d else 0.0
    return (W_RATIO * w / p
            + W_URGENT * (w / p) * math.exp(-slack / max(K_LOOKAHEAD, 0.01))
            - W_SLACK * slack
            + W_LATE * late * w
            - W_PROC * p / pbar)
