"""Expert cache policy for Pre-gated mixture-of-experts inference (see the task text).

plan(obs) is called once per token, before the token runs, and returns the token's plan:
retention priorities per (layer, expert), a bonus per layer distance, and speculative prefetches.
"""

# EVOLVE-BLOCK-START
DECAY = 0.5  # per-token decay of the usage scores
GATE_WEIGHT = 0.0  # weight of the previous token's gate scores in the priority
DISTANCE_WEIGHT = 0.0  # priority added per layer of distance (negative: keep soon-needed layers)
REUSE_BONUS = 0.0  # priority added to experts the current token has already used
PREFETCH = 0  # speculative prefetches per token (highest-priority experts not in the cache)


class Policy:
    def __init__(self, layers, experts):
        self.layers, self.experts = layers, experts
        self.score = [[0.0] * experts for _ in range(layers)]

    def plan(self, obs):
        L, E = self.layers, self.experts
        if obs["prev_routing"] is not None:
            for ly in range(L):
                row = self.score[ly]
                for e in range(E):
                    row[e] *= DECAY
                for e in obs["prev_routing"][ly]:
                    row[e] += 1.0
        gates = obs["prev_gates"]
        priority = [
            [self.score[ly][e] + (GATE_WEIGHT * gates[ly][e] if gates else 0.0) for e in range(E)]
            for ly in range(L)
        ]
        bonus = [DISTANCE_WEIGHT * d for d in range(L)]
        cached = {(ly, e) for ly, e in obs["resident"]}
        ranked = sorted(((priority[ly][e], ly, e) for ly in range(L) for e in range(E)
                         if (ly, e) not in cached), reverse=True)
        prefetch = [[ly, e] for _, ly, e in ranked[:PREFETCH]]
        return {"priority": priority, "distance_bonus": bonus, "reuse_bonus": REUSE_BONUS,
                "prefetch": prefetch}
# EVOLVE-BLOCK-END


_policy = None


def plan(obs):
    """Called once per token; obs["token"] == 0 starts a new trace (a fresh policy)."""
    global _policy
    if obs["token"] == 0 or _policy is None:
        _policy = Policy(obs["layers"], obs["experts"])
    return _policy.plan(obs)
