package dm

import "fmt"

// LinearParams are the arguments of the linear target
// (Documentation/admin-guide/device-mapper/linear.rst):
//
//	linear <dev path> <offset>
//
// cryptsetup builds the same string in lib/libdevmapper.c:get_dm_linear_params.
type LinearParams struct {
	// Device is the backing device path or "major:minor".
	Device string
	// Offset is the starting sector on Device.
	Offset uint64
}

// Params returns the linear argument string "<dev> <offset>".
func (p LinearParams) Params() (string, error) {
	if err := checkWord("device", p.Device); err != nil {
		return "", fmt.Errorf("dm: linear: %w", err)
	}
	return fmt.Sprintf("%s %d", p.Device, p.Offset), nil
}

// Target returns the linear table line covering length sectors from start.
func (p LinearParams) Target(start, length uint64) (Target, error) {
	params, err := p.Params()
	if err != nil {
		return Target{}, err
	}
	if length == 0 {
		return Target{}, fmt.Errorf("dm: linear: zero length")
	}
	return Target{Start: start, Length: length, Type: "linear", Params: params}, nil
}
