"""Three-dimensional targets in the style of head pose: (yaw, pitch, roll) in degrees.

    python examples/head_pose_3d.py [--epochs 40] [--rows 4000]

The inputs are 16 noisy measurements of a pose in which the sign of the yaw is not
observable (a face seen in a mirror-symmetric way): p(yaw | x) has two modes, at +|yaw|
and -|yaw|, while pitch and roll are well determined. An EBM (joint_nce) and an MDN are
fitted with the scikit-learn estimators on y of shape (n, 3); the script prints their test
NLL (nats per row, 3-D density) and the error of each angle, and shows that the EBM's
samples for one row fall on both yaw modes.
"""

from __future__ import annotations

import argparse

import numpy as np

from ebreg import EBMRegressor, MDNRegressor


def poses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    y = np.stack([rng.uniform(-60, 60, n), rng.uniform(-30, 30, n), rng.uniform(-20, 20, n)], 1)
    visible = np.stack([np.abs(y[:, 0]), y[:, 1], y[:, 2]], 1) / 30.0  # the yaw's sign is lost
    mixing = np.random.RandomState(1234).randn(3, 16)
    x = np.tanh(visible @ mixing) + 0.05 * rng.randn(n, 16)
    return x, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--rows", type=int, default=4000)
    args = p.parse_args()
    x, y = poses(args.rows, 0)
    x_test, y_test = poses(1000, 1)
    for est in (EBMRegressor(epochs=args.epochs, energy_width=64, random_state=0),
                MDNRegressor(epochs=args.epochs, random_state=0)):
        est.fit(x, y)
        nll = -est.log_likelihood(x_test, y_test).mean()
        mae = np.abs(est.predict(x_test) - y_test).mean(0)
        print(f"{type(est).__name__}: test NLL {nll:.3f}; MAE of the mean (yaw, pitch, roll) "
              f"{mae[0]:.1f}, {mae[1]:.1f}, {mae[2]:.1f} degrees (the yaw's mean sits between its two modes)")
        draws = est.predict_dist(x_test[:1]).sample(200, random_state=0)[:, 0]  # (200, 3)
        print(f"  row 0, true yaw {y_test[0, 0]:+.1f}: share of sampled yaws > 0: {np.mean(draws[:, 0] > 0):.2f}")


if __name__ == "__main__":
    main()
