#!/usr/bin/env python3
"""What a node pulls for a one-file change, by pack-splitting rule, on a tree: the image
manifest's layer descriptors (about 175 bytes each when this was written, 130 now) plus the
expected compressed size of the pack holding a file chosen uniformly. zlib stands in for zstd
and sha256 for BLAKE3: the figures compare rules, they are not the wire bytes
(bench/registry.sh measures those).

Usage: bench/pack-size-sim.py TREE   (e.g. bench/work/tree, from bench/tree.sh)
"""
import os, hashlib, zlib, sys
root=sys.argv[1]
files=[]
for d,_,fs in os.walk(root):
    for f in fs:
        p=os.path.join(d,f)
        files.append(os.path.relpath(p,root))
files.sort()
data=[]
seen=set()
for f in files:
    b=open(os.path.join(root,f),'rb').read()
    h=hashlib.sha256(b).digest()
    if h in seen: continue
    seen.add(h)
    data.append((h,len(b),len(zlib.compress(b,6))))
print('distinct', len(data), 'raw', sum(d[1] for d in data), 'comp', sum(d[2] for d in data))
def groups_count(spread):
    g=[];cur=[];by=0
    for h,s,c in data:
        if s>=1<<20:
            if cur: g.append(cur); cur=[]; by=0
            g.append([(h,s,c)]); continue
        cur.append((h,s,c)); by+=s
        if by>=4<<20 or int.from_bytes(h[30:32],'little')%spread==0:
            g.append(cur);cur=[];by=0
    if cur:g.append(cur)
    return g
def groups_bytes(target):
    g=[];cur=[];by=0
    for h,s,c in data:
        if s>=1<<20:
            if cur: g.append(cur); cur=[]; by=0
            g.append([(h,s,c)]); continue
        cur.append((h,s,c)); by+=s
        x=int.from_bytes(h[:4],'little')
        if by>=4<<20 or x*target < s*(1<<32):
            g.append(cur);cur=[];by=0
    if cur:g.append(cur)
    return g
def cost(g):
    L=len(g)+60
    man=L*175+500
    # expected fetched pack compressed size for a uniformly chosen changed file
    n=sum(len(x) for x in g)
    exp=sum(len(x)*sum(c for _,_,c in x) for x in g)/n
    return L, man, exp, man+exp
for sp in [8,16,32,64]:
    print('count',sp, [round(v) for v in cost(groups_count(sp))])
for t in [16<<10,32<<10,64<<10,128<<10,256<<10]:
    print('bytes',t>>10,'K', [round(v) for v in cost(groups_bytes(t))])
