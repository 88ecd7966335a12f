"""Loaders of the tasks' training data: packaged images (scikit-learn digits,
Fashion-MNIST, Animal-MNIST, Openclipart), local paper-scale copies (CIFAR-100,
ArtBench, Fashion Product Images, dermoscopy), the synthetic stand-ins built from them
(fashion-brands, spurious-sites), and text-to-image items. A loader that cannot find
its files raises :class:`~surrogateshap.tasks.data.images.DataMissingError` naming the
file and what provides it. Every dataset offers ``players``, ``item_contributor``,
``unit_names`` and ``item_unit``."""
