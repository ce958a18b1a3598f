"""Regularisation of Eq 45."""

from __future__ import annotations

import pytest
import torch

from safegbpo.safeguards import DEFAULT_REGULARISATION, regularisation_loss

F64 = torch.float64


def test_value_and_gradient():
    action = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], dtype=F64, requires_grad=True)
    safe = torch.tensor([[0.5, 2.0], [0.0, 0.0], [1.0, 0.0]], dtype=F64)
    loss = regularisation_loss(action, safe, 0.1)
    assert float(loss.detach()) == pytest.approx(0.1 * (0.25 + 0.0 + 5.0) / 3)
    loss.backward()
    torch.testing.assert_close(action.grad, 0.1 * 2 * (action - safe).detach() / 3)
    assert DEFAULT_REGULARISATION == 0.1


def test_mean_over_all_leading_dimensions_and_zero_for_safe_actions():
    action = torch.ones(4, 3, 2, dtype=F64)
    assert float(regularisation_loss(action, action.clone(), 0.1)) == 0.0
    loss = regularisation_loss(action, torch.zeros_like(action), 2.0)
    assert float(loss) == pytest.approx(2.0 * 2.0)


@pytest.mark.parametrize("coef", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_bad_coefficient(coef):
    with pytest.raises(ValueError, match="coef"):
        regularisation_loss(torch.zeros(2, 1), torch.zeros(2, 1), coef)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        regularisation_loss(torch.zeros(2, 1), torch.zeros(3, 1), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        regularisation_loss(torch.tensor([[float("nan")]]), torch.zeros(1, 1), 0.1)
    with pytest.raises(ValueError, match="non-empty"):
        regularisation_loss(torch.zeros(0, 2), torch.zeros(0, 2), 0.1)
