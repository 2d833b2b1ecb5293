"""Vocoders (log-mel -> 48 kHz wave), their GAN discriminators and losses."""

from hireslm.models.vocoder.base import Vocoder
from hireslm.models.vocoder.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
)
from hireslm.models.vocoder.hifigan import HiFiGANVocoder
from hireslm.models.vocoder.losses import (
    MultiScaleMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from hireslm.models.vocoder.vocos import VocosVocoder

__all__ = [
    "HiFiGANVocoder", "MultiPeriodDiscriminator", "MultiResolutionDiscriminator",
    "MultiScaleMelLoss", "Vocoder", "VocosVocoder", "discriminator_loss",
    "feature_matching_loss", "generator_adversarial_loss",
]
