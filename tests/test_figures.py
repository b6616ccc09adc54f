"""Figures every stage logs stay drawable at ImageNet's scale."""

import torch

from pipeline import figures


def test_a_1000_class_confusion_matrix_is_a_bounded_figure_without_a_name_per_class():
    matrix = torch.eye(1000, dtype=torch.long) * 3
    figure = figures.confusion_figure(matrix, [f"n{i:08d}" for i in range(1000)], "imagenet")
    width, height = figure.get_size_inches()
    assert max(width, height) <= figures.MAX_CONFUSION_INCHES + 1  # was 501 x 500 inches: 50,000 pixels a side
    assert figure.axes[0].get_xticklabels() == [] or len(figure.axes[0].get_xticklabels()) < 50
    figures.close(figure)


def test_a_ten_class_confusion_matrix_names_every_class_and_counts_every_cell():
    matrix = torch.arange(100).view(10, 10)
    figure = figures.confusion_figure(matrix, [f"class{i}" for i in range(10)], "cifar10")
    axis = figure.axes[0]
    assert [label.get_text() for label in axis.get_yticklabels()] == [f"class{i}" for i in range(10)]
    assert len(axis.texts) == 100
    figures.close(figure)
