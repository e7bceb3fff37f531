"""The accuracy-cost front: the networks no other network beats on both accuracy and cost.

Pure functions over (cost, accuracy) pairs, so a test can check them without a picture: the front a
scatter draws (`figures.plot_front`) and the one the page lists are the same.
"""

import math
from typing import Sequence


def non_dominated(points: Sequence[tuple[float, float]]) -> list[int]:
  """Indices of the points on the front, cheapest first: (cost, accuracy) pairs, lower cost and higher
  accuracy better. A point is dominated when another is at most as costly and at least as accurate,
  and strictly better in one; of equal points the first is kept. Points with a NaN are left out.
  """
  finite = [i for i, (cost, accuracy) in enumerate(points) if not (math.isnan(cost) or math.isnan(accuracy))]
  ordered = sorted(finite, key=lambda i: (points[i][0], -points[i][1], i))
  front, best = [], -math.inf
  for index in ordered:
    if points[index][1] > best:  # cheapest-first: kept only if more accurate than every cheaper one
      front.append(index)
      best = points[index][1]
  return front
