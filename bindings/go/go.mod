module tern.dev/tern

go 1.19
