"""The ``risk`` step: the risk engine (:mod:`.engine`) scores every payment of the tick, the
learned scorer (:mod:`.scorer`) refits on delayed labels, the injector (:mod:`.fraud`) adds
labelled fraud, and :mod:`.everyday` draws the legitimate everyday payments it is scored among."""
