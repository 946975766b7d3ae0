//! The challenge page: a SHA-256 proof of work in plain JavaScript (its own hash code:
//! `crypto.subtle` exists only on https and localhost), then on to `solve`, which sets the
//! pass. No third party, nothing fetched: it works offline and behind any proxy.

/// The page for `challenge` at `bits` leading zero bits, returning to `back` once solved.
pub fn render(challenge: &str, bits: u8, back: &str) -> String {
    // Inside <script>: JSON strings, with `<` escaped so no `</script>` can close the block.
    let js = |s: &str| {
        serde_json::to_string(s)
            .expect("strings serialize")
            .replace('<', "\\u003c")
    };
    PAGE.replace("{{CHALLENGE}}", &js(challenge))
        .replace("{{BITS}}", &bits.to_string())
        .replace("{{BACK}}", &js(back))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Checking your browser</title>
<style>body{font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>
</head><body>
<h1>One moment</h1>
<p id="status">Your browser is doing a small calculation to show it is not a bot. This takes
a second or two, then you continue to the page you asked for.</p>
<noscript><p><strong>This check needs JavaScript.</strong> Traffic from your network looked
unusual, so this site asks browsers to solve a small puzzle before going on. Please enable
JavaScript for this site and reload, or try again later from another network.</p></noscript>
<script>
(function(){
var CHALLENGE={{CHALLENGE}},BITS={{BITS}},BACK={{BACK}};
var K=[0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
var W=new Array(64);
// The first 32 bits of SHA-256 of an ASCII string (enough for up to 32 bits of work).
function head(s){
  var n=s.length,blocks=((n+8)>>6)+1,w=new Array(blocks*16),i,j;
  for(i=0;i<w.length;i++)w[i]=0;
  for(i=0;i<n;i++)w[i>>2]|=s.charCodeAt(i)<<(24-(i&3)*8);
  w[n>>2]|=0x80<<(24-(n&3)*8);
  w[blocks*16-1]=n*8;
  var H=[0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19];
  for(j=0;j<w.length;j+=16){
    var a=H[0],b=H[1],c=H[2],d=H[3],e=H[4],f=H[5],g=H[6],h=H[7];
    for(i=0;i<64;i++){
      if(i<16)W[i]=w[j+i]|0;
      else{var x=W[i-15],y=W[i-2];
        W[i]=(((x>>>7)|(x<<25))^((x>>>18)|(x<<14))^(x>>>3))+W[i-16]
          +(((y>>>17)|(y<<15))^((y>>>19)|(y<<13))^(y>>>10))+W[i-7]|0;}
      var t1=h+(((e>>>6)|(e<<26))^((e>>>11)|(e<<21))^((e>>>25)|(e<<7)))+((e&f)^(~e&g))+K[i]+W[i]|0;
      var t2=(((a>>>2)|(a<<30))^((a>>>13)|(a<<19))^((a>>>22)|(a<<10)))+((a&b)^(a&c)^(b&c))|0;
      h=g;g=f;f=e;e=d+t1|0;d=c;c=b;b=a;a=t1+t2|0;
    }
    H[0]=H[0]+a|0;H[1]=H[1]+b|0;H[2]=H[2]+c|0;H[3]=H[3]+d|0;
    H[4]=H[4]+e|0;H[5]=H[5]+f|0;H[6]=H[6]+g|0;H[7]=H[7]+h|0;
  }
  return H[0]>>>0;
}
var nonce=0,started=Date.now(),prefix=CHALLENGE+":";
function work(){
  for(var k=0;k<50000;k++,nonce++){
    if((head(prefix+nonce)>>>(32-BITS))===0){
      document.getElementById("status").textContent="Done, continuing\u2026";
      location.replace("/.ipwarden/solve?challenge="+CHALLENGE+"&nonce="+nonce+
        "&ms="+(Date.now()-started)+"&return="+encodeURIComponent(BACK));
      return;
    }
  }
  setTimeout(work,0);
}
setTimeout(work,0);
})();
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_from_outside_escapes_its_string() {
        let page = render("ab.cd", 16, "/x</script><script>alert(1)</script>\"");
        assert!(!page.contains("</script><script>alert"));
        assert!(page.contains(r#"CHALLENGE="ab.cd",BITS=16,BACK="/x\u003c/script>"#));
    }
}
