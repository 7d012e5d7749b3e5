"""Activation ranges of TransNetV2's int8 convolution blocks (see pipeline.models.quantized).

Written by ``python -m pipeline.models.quantized`` from a calibration run over the built-in
sample corpus; do not edit. One (scale, zero point, dtype, quant_min, quant_max) per
observer of each FX-prepared block.
"""

from pipeline.models.quantized import ObserverParams

#: The weights these ranges were measured with (``weights.recorded_digest``).
WEIGHTS_DIGEST = 'a313d0b3bebfa9a7'

OBSERVERS: list[dict[str, ObserverParams]] = [
    {
        'activation_post_process_0': (0.0074072349816560745, 0, 'quint8', 0, 127),
        'activation_post_process_1': (0.04025429114699364, 68, 'quint8', 0, 127),
        'activation_post_process_2': (0.057892926037311554, 74, 'quint8', 0, 127),
        'activation_post_process_3': (0.025581158697605133, 53, 'quint8', 0, 127),
        'activation_post_process_4': (0.057892926037311554, 74, 'quint8', 0, 127),
        'activation_post_process_5': (0.030159037560224533, 59, 'quint8', 0, 127),
        'activation_post_process_6': (0.057892926037311554, 74, 'quint8', 0, 127),
        'activation_post_process_7': (0.03240945190191269, 73, 'quint8', 0, 127),
        'activation_post_process_8': (0.057892926037311554, 74, 'quint8', 0, 127),
        'activation_post_process_9': (0.057892926037311554, 74, 'quint8', 0, 127),
        'activation_post_process_10': (0.047754403203725815, 0, 'quint8', 0, 127),
        'activation_post_process_11': (0.06699338555335999, 55, 'quint8', 0, 127),
        'activation_post_process_12': (0.09890342503786087, 61, 'quint8', 0, 127),
        'activation_post_process_13': (0.0607127882540226, 60, 'quint8', 0, 127),
        'activation_post_process_14': (0.09890342503786087, 61, 'quint8', 0, 127),
        'activation_post_process_15': (0.07578122615814209, 62, 'quint8', 0, 127),
        'activation_post_process_16': (0.09890342503786087, 61, 'quint8', 0, 127),
        'activation_post_process_17': (0.0654539242386818, 65, 'quint8', 0, 127),
        'activation_post_process_18': (0.09890342503786087, 61, 'quint8', 0, 127),
        'activation_post_process_19': (0.09890342503786087, 61, 'quint8', 0, 127),
        'activation_post_process_20': (0.04557982459664345, 0, 'quint8', 0, 127),
        'activation_post_process_21': (0.05683305114507675, 0, 'quint8', 0, 127),
        'activation_post_process_22': (0.05683305114507675, 0, 'quint8', 0, 127),
    },
    {
        'activation_post_process_0': (0.05248666927218437, 0, 'quint8', 0, 127),
        'activation_post_process_1': (0.08441814035177231, 66, 'quint8', 0, 127),
        'activation_post_process_2': (0.13703960180282593, 62, 'quint8', 0, 127),
        'activation_post_process_3': (0.10489501059055328, 61, 'quint8', 0, 127),
        'activation_post_process_4': (0.13703960180282593, 62, 'quint8', 0, 127),
        'activation_post_process_5': (0.1358872950077057, 48, 'quint8', 0, 127),
        'activation_post_process_6': (0.13703960180282593, 62, 'quint8', 0, 127),
        'activation_post_process_7': (0.09683431684970856, 56, 'quint8', 0, 127),
        'activation_post_process_8': (0.13703960180282593, 62, 'quint8', 0, 127),
        'activation_post_process_9': (0.13703960180282593, 62, 'quint8', 0, 127),
        'activation_post_process_10': (0.0419648103415966, 0, 'quint8', 0, 127),
        'activation_post_process_11': (0.09006049484014511, 54, 'quint8', 0, 127),
        'activation_post_process_12': (0.08653007447719574, 69, 'quint8', 0, 127),
        'activation_post_process_13': (0.08576338738203049, 69, 'quint8', 0, 127),
        'activation_post_process_14': (0.08653007447719574, 69, 'quint8', 0, 127),
        'activation_post_process_15': (0.07129406929016113, 63, 'quint8', 0, 127),
        'activation_post_process_16': (0.08653007447719574, 69, 'quint8', 0, 127),
        'activation_post_process_17': (0.07456610351800919, 68, 'quint8', 0, 127),
        'activation_post_process_18': (0.08653007447719574, 69, 'quint8', 0, 127),
        'activation_post_process_19': (0.08653007447719574, 69, 'quint8', 0, 127),
        'activation_post_process_20': (0.04550708830356598, 0, 'quint8', 0, 127),
        'activation_post_process_21': (0.05524511635303497, 0, 'quint8', 0, 127),
        'activation_post_process_22': (0.05524511635303497, 0, 'quint8', 0, 127),
    },
    {
        'activation_post_process_0': (0.05356566980481148, 0, 'quint8', 0, 127),
        'activation_post_process_1': (0.11142107844352722, 72, 'quint8', 0, 127),
        'activation_post_process_2': (0.13157299160957336, 70, 'quint8', 0, 127),
        'activation_post_process_3': (0.10372015833854675, 60, 'quint8', 0, 127),
        'activation_post_process_4': (0.13157299160957336, 70, 'quint8', 0, 127),
        'activation_post_process_5': (0.10586415231227875, 64, 'quint8', 0, 127),
        'activation_post_process_6': (0.13157299160957336, 70, 'quint8', 0, 127),
        'activation_post_process_7': (0.10329315066337585, 59, 'quint8', 0, 127),
        'activation_post_process_8': (0.13157299160957336, 70, 'quint8', 0, 127),
        'activation_post_process_9': (0.13157299160957336, 70, 'quint8', 0, 127),
        'activation_post_process_10': (0.04015330597758293, 0, 'quint8', 0, 127),
        'activation_post_process_11': (0.05954434350132942, 67, 'quint8', 0, 127),
        'activation_post_process_12': (0.08466488122940063, 64, 'quint8', 0, 127),
        'activation_post_process_13': (0.057694487273693085, 58, 'quint8', 0, 127),
        'activation_post_process_14': (0.08466488122940063, 64, 'quint8', 0, 127),
        'activation_post_process_15': (0.05607173219323158, 64, 'quint8', 0, 127),
        'activation_post_process_16': (0.08466488122940063, 64, 'quint8', 0, 127),
        'activation_post_process_17': (0.05692795664072037, 68, 'quint8', 0, 127),
        'activation_post_process_18': (0.08466488122940063, 64, 'quint8', 0, 127),
        'activation_post_process_19': (0.08466488122940063, 64, 'quint8', 0, 127),
        'activation_post_process_20': (0.04998888075351715, 0, 'quint8', 0, 127),
        'activation_post_process_21': (0.06111625209450722, 0, 'quint8', 0, 127),
        'activation_post_process_22': (0.06111625209450722, 0, 'quint8', 0, 127),
    },
]
