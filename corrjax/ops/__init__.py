"""Array operations shared by losses and evaluation."""
