"""choral inside other libraries: BoTorch (:mod:`.botorch`, extra ``choral[botorch]``) and
scikit-learn (:mod:`.sklearn`). Imported on demand, so their dependencies stay optional."""
