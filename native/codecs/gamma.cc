// STUB: replaced by the owner of this codec family.
#include "core/codec.h"

namespace gz {
uint64_t qsgd_var_max_payload(const Params&, uint64_t) { throw Error(ErrCode::INTERNAL, "native/codecs/gamma.cc: not implemented yet"); }
uint64_t qsgd_var_encode(EncodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/gamma.cc: not implemented yet"); }
void qsgd_var_validate(const Header&, int) { throw Error(ErrCode::INTERNAL, "native/codecs/gamma.cc: not implemented yet"); }
void qsgd_var_decode(const DecodeArgs&) { throw Error(ErrCode::INTERNAL, "native/codecs/gamma.cc: not implemented yet"); }
}  // namespace gz
