"""The harnet network: backbones for 5-, 10- and 30-s windows, their pretext and classifier heads, strict checkpoint loading."""
