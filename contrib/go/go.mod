module lars

go 1.19
