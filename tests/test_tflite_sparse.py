"""TFLite's sparse constants made dense (what its DENSIFY operator does), on hand-worked tensors."""

import numpy as np
import pytest

from henshin.nets.tflite_sparse import DENSE, SPARSE_CSR, Level, SparsityError, densify


def _csr(segments, indices):
    return Level(SPARSE_CSR, 0, np.array(segments), np.array(indices))


def test_rows_stored_as_compressed_sparse_rows():
    values = np.array([5.0, 6.0, 7.0])
    dense = densify(values, [2, 3], [0, 1], [], [Level(DENSE, 2), _csr([0, 2, 3], [0, 2, 1])])
    assert dense.tolist() == [[5, 0, 6], [0, 7, 0]]


def test_a_permuted_traversal_walks_columns_first():
    values = np.array([4.0, 8.0, 9.0])
    # column 0 holds row 1; column 1 nothing; column 2 rows 0 and 1
    levels = [Level(DENSE, 3), _csr([0, 1, 1, 3], [1, 0, 1])]
    assert densify(values, [2, 3], [1, 0], [], levels).tolist() == [[0, 0, 8], [4, 0, 9]]


def test_blocks_are_placed_whole():
    values = np.arange(1.0, 9.0)
    # 4x4 in 2x2 blocks: block row 0 has block column 1, block row 1 has block column 0
    levels = [Level(DENSE, 2), _csr([0, 1, 2], [1, 0]), Level(DENSE, 2), Level(DENSE, 2)]
    dense = densify(values, [4, 4], [0, 1, 2, 3], [0, 1], levels)
    assert dense.tolist() == [[0, 0, 1, 2], [0, 0, 3, 4], [5, 6, 0, 0], [7, 8, 0, 0]]


def test_a_convolution_weight_sparse_in_its_input_channels():
    values = np.array([1.5, 2.5, 3.5], np.float16)
    levels = [Level(DENSE, 2), Level(DENSE, 1), Level(DENSE, 1), _csr([0, 1, 3], [2, 0, 1])]
    dense = densify(values, [2, 1, 1, 3], [0, 1, 2, 3], [], levels)
    assert dense.dtype == np.float16 and dense.shape == (2, 1, 1, 3)
    assert dense.reshape(2, 3).tolist() == [[0, 0, 1.5], [2.5, 3.5, 0]]


@pytest.mark.parametrize(
    "values, levels, message",
    [
        (np.ones(3), [Level(DENSE, 2), _csr([0, 2, 3], [0, 3, 1])], "indices"),
        (np.ones(3), [Level(DENSE, 2), _csr([0, 2], [0, 1])], "segments"),
        (np.ones(3), [Level(DENSE, 2), _csr([0, 2, 1], [0, 1, 2])], "increasing"),
        (np.ones(4), [Level(DENSE, 2), _csr([0, 2, 3], [0, 2, 1])], "stores 4"),
        (np.ones(3), [Level(DENSE, 3), _csr([0, 2, 3], [0, 2, 1])], "size 3"),
        (np.ones(3), [Level(DENSE, 2)], "entries"),
    ],
)
def test_parameters_that_do_not_fit_the_tensor_are_refused(values, levels, message):
    with pytest.raises(SparsityError, match=message):
        densify(values, [2, 3], [0, 1][: max(len(levels), 2)], [], levels)
