"""B2's warm-pool rows: minIdle from the history, and the pool's idle pods absorbing a rise."""

from __future__ import annotations

from bench.warm import min_idle, replay_pool, rise_within, split


def hold(size: int):  # type: ignore[no-untyped-def]
    return lambda t, cur, rdy, load: size


def test_min_idle_covers_the_95th_percentile_rise_within_one_start_up() -> None:
    loads = [5.0] * 200 + [8.0] * 100  # one rise of 3, seen from the 12 moments before it (60 s, 5 s bins)
    rises = rise_within(loads, 5.0, 60.0)
    assert max(rises) == 3.0 and sum(r > 0 for r in rises) == 12
    assert min_idle(loads, 5.0, 60.0) == 0  # 12 of 288 moments: under 5 %
    assert min_idle(loads[160:240], 5.0, 60.0) == 3  # 12 of 68: over 5 %


def test_split_holds_out_the_second_half_from_time_0() -> None:
    history, later = split([(5.0 * i, float(i)) for i in range(10)])
    assert history == [0.0, 1.0, 2.0, 3.0, 4.0] and later[0] == (0.0, 5.0) and later[-1] == (20.0, 9.0)


def test_idle_pods_absorb_a_rise_up_to_min_idle_and_only_the_rest_waits_for_start_up() -> None:
    trace = [(5.0 * i, 4.0 if i < 20 else 7.0) for i in range(60)]  # +3 at 100 s
    # The scaler holds 6 (4 at a 70 % target): the pool holds 4 + 3 = 7, or 6 with one idle pod.
    served, _ = replay_pool(trace, hold(6), idle=3, startup=60.0, min_r=1)
    short, changes = replay_pool(trace, hold(6), idle=1, startup=60.0, min_r=1)
    assert served.under == 0
    assert short.under == 1 * 60  # 1 unit waited one start-up
    assert served.cost > short.cost  # the idle pods are paid for
    assert changes >= 1 and short.events == 0  # the pool grew; the scaler never changed its mind


def test_a_missed_row_names_the_first_lever_its_own_figures_say_would_do() -> None:
    from bench.b2 import lever

    def v(under: bool, cost: bool) -> dict[str, object]:
        return {
            "under_met": under,
            "cost_met": cost,
            "under": 0.4 if under else 0.9,
            "cost": 0.9 if cost else 1.2,
        }

    row: dict[str, object] = {
        "vs_hpa": v(False, True),
        "predictive_vs_hpa": v(True, True),
        "warm": {"min_idle": 3, "vs_hpa": v(True, True)},
        "reachable": False,
        "frontier": {"within_cost_and_events": None},
    }
    assert lever(row).startswith("warm capacity (minIdle 3")
    row["warm"] = {"min_idle": 3, "vs_hpa": v(True, False)}  # it would cost more than HPA
    assert lever(row) == "prediction"
    row["predictive_vs_hpa"] = v(False, True)
    assert lever(row).startswith("foresight")
    row["vs_hpa"] = v(True, True)  # only its events missed
    assert lever(row).startswith("fewer size changes")
