module fibra-lab-go

go 1.19
