// Command pe is a tiny program the secureboot tests cross-compile for
// windows/amd64 to get a PE/COFF image to sign.
package main

func main() { println("confidisk secureboot test image") }
